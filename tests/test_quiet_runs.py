"""A kedro command in this project changes no tracked file and asks nothing of the network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT, copy_project


def test_a_kedro_command_leaves_git_status_clean(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    shutil.copy(PROJECT_ROOT / ".gitignore", project / ".gitignore")

    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=project, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", "project")
    # As a user would run it: without the opt-out variables the test suite sets.
    environment = {
        key: value for key, value in os.environ.items() if key not in {"KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK"}
    }
    kedro = Path(sys.executable).with_name("kedro")
    done = subprocess.run(
        [kedro, "catalog", "describe-datasets", "--pipeline", "data_prep"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "anonymous usage data" not in done.stdout + done.stderr
    assert git("status", "--porcelain") == ""  # pyproject.toml untouched; info.log ignored
    assert (project / "info.log").is_file()  # the rotating log of conf/logging.yml
