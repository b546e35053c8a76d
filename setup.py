"""The one compiled module of the auditor's replay; pyproject.toml holds everything else.

`optional=True`: where no C compiler is available (the slim Docker image), the package
still installs and the replay folds every record in Python (`services.auditor.compiled`
says so in the log). In this project's own environment a test asserts that the compiled
module is there (tests/unit/test_auditor_compiled_fold.py), so a broken build fails CI.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "services.auditor._plain_records", ["services/auditor/_plain_records.c"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
    optional=True)])
