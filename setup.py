"""The one compiled module of the auditor's replay; pyproject.toml holds everything else.

`optional=True`: where no C compiler is available, the package still installs and the
replay folds every record in Python (`services.auditor.compiled` says so in the log). In
this project's own environment a test asserts that the compiled module is there
(tests/unit/test_auditor_compiled_fold.py), so a broken build fails CI; the Docker image
compiles it in a build stage with gcc and refuses to build without it.

SHA-256: OpenSSL's libcrypto (the library Python's `hashlib` uses) where its headers are
installed, else `hashlib` called from C; nothing else is linked, nothing is vendored.
"""

import os
import sysconfig

from setuptools import Extension, setup

HEADER_DIRECTORIES = ("/usr/include", "/usr/local/include", sysconfig.get_paths()["include"])


def openssl_options() -> dict:
    """Link libcrypto when its SHA-256 header can be found."""
    if any(os.path.exists(os.path.join(directory, "openssl", "sha.h"))
           for directory in HEADER_DIRECTORIES):
        return {"define_macros": [("PASSNUM_OPENSSL_SHA256", "1")], "libraries": ["crypto"]}
    return {}


setup(ext_modules=[Extension(
    "services.auditor._plain_records", ["services/auditor/_plain_records.c"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
    optional=True, **openssl_options())])
