"""Dockerfile rules the image build taught us. scripts/build-image catches each of these by
building and running the image; these name the rule and fail in seconds, without root."""

from __future__ import annotations

import re
import shlex

from tests.unit.test_packaging import (
    DOCKERFILE,
    build_args,
    dockerfile,
    final_stage,
)


def test_no_syntax_directive() -> None:
    # `# syntax=` makes BuildKit pull a frontend image: an offline builder fails on it.
    first = DOCKERFILE.read_text(encoding="utf-8").lstrip().splitlines()[0]
    assert not re.match(r"#\s*syntax\s*=", first, re.IGNORECASE), first


def test_base_image_is_a_build_arg_so_it_can_be_pinned_by_digest() -> None:
    froms = [i.value.split()[0] for i in dockerfile() if i.keyword == "FROM"]
    external = [f for f in froms if f.startswith("$")]
    assert external, "FROM should name the base through an ARG (digest pinning)"
    assert all(f in ("${PYTHON_IMAGE}", "$PYTHON_IMAGE") for f in external)
    assert build_args()["PYTHON_IMAGE"].startswith("python:3.12.")
    assert "@sha256:<digest>" in DOCKERFILE.read_text(encoding="utf-8"), "document digest pinning"


def test_runtime_venv_has_no_pip() -> None:
    venvs = [i for i in dockerfile() if i.keyword == "RUN" and re.search(r"-m\s+venv\b", i.value)]
    assert venvs, "no venv is made"
    for run in venvs:
        assert "--without-pip" in shlex.split(run.value), run.value
    installs = [i for i in dockerfile() if i.keyword == "RUN" and "install" in i.value]
    # The base's pip installs into the venv (`pip --python`), the venv's own pip never exists.
    assert any("--python /opt/venv/bin/python" in i.value for i in installs)


def test_system_user_with_a_high_uid_does_not_warn() -> None:
    # useradd/groupadd --system warn when the id is above SYS_UID_MAX / SYS_GID_MAX (999).
    runs = [i.value for i in final_stage() if i.keyword == "RUN" and "useradd" in i.value]
    assert runs
    words = shlex.split(runs[0].replace("&&", " && "))
    for command, key in (("useradd", "SYS_UID_MAX"), ("groupadd", "SYS_GID_MAX")):
        start = words.index(command)
        end = words.index("&&", start) if "&&" in words[start:] else len(words)
        args = words[start:end]
        if "--system" in args:
            assert "--key" in args, f"{command} --system needs --key {key}=..."
            assert args[args.index("--key") + 1].startswith(f"{key}="), args


def test_bytecode_is_compiled_before_switching_to_the_app_user() -> None:
    # As uid 10001, compileall can't write next to root-owned code: the read-only root at
    # run time then means every start compiles in memory, and the build warns or fails.
    final = final_stage()
    keywords = [i.keyword for i in final]
    compile_at = [n for n, i in enumerate(final) if i.keyword == "RUN" and "compileall" in i.value]
    user_at = keywords.index("USER")
    assert compile_at and max(compile_at) < user_at
    # Nothing runs as the app user at build time: it owns nothing it could write.
    assert "RUN" not in keywords[user_at:]
    copied = [i for i in final[:user_at] if i.keyword == "COPY" and "coffeebuddy" in i.value]
    assert copied and final.index(copied[-1]) < max(compile_at), "compile after the code lands"


def test_metrics_dir_is_on_the_writable_tmp_mount() -> None:
    # The root filesystem is read-only in the pods; only /tmp (an emptyDir) is writable.
    env: dict[str, str] = {}
    for i in final_stage():
        if i.keyword == "ENV":
            env.update(word.partition("=")[::2] for word in shlex.split(i.value))
    metrics = env["PROMETHEUS_MULTIPROC_DIR"]
    assert metrics.startswith("/tmp/") and ".." not in metrics  # noqa: S108
