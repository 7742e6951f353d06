"""Importing ``actors`` next to another package called ``supervision`` fails with a clear
ImportError (Roboflow's computer-vision package uses the same import name)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import supervision

OURS = Path(supervision.__file__).parent


def import_actors(*path: Path) -> subprocess.CompletedProcess[str]:
    """``import actors`` in a fresh interpreter with ``path`` ahead of everything installed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, path))}
    return subprocess.run(
        [sys.executable, "-c", "import actors"],
        capture_output=True,
        text=True,
        env=env,
        cwd=path[0],  # not this checkout: "-c" puts the working directory first on sys.path
        timeout=60,
        check=False,
    )


def install_foreign_dist(site: Path, *, package_from: Path | None) -> None:
    """Lay out ``site`` as pip leaves it after installing a distribution named ``supervision``
    (its metadata, and its package unless ``package_from`` puts ours there instead)."""
    info = site / "supervision-0.31.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: supervision\nVersion: 0.31.2\n")
    (info / "RECORD").write_text("supervision/__init__.py,,\n")
    if package_from is None:
        (site / "supervision").mkdir()
        (site / "supervision" / "__init__.py").write_text(
            "raise ImportError('cannot import name cv2')\n"
        )
    else:
        shutil.copytree(package_from, site / "supervision")


def test_the_other_supervision_installed_over_ours_is_named_with_the_fix(tmp_path: Path) -> None:
    install_foreign_dist(tmp_path, package_from=None)
    done = import_actors(tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: hystrix-actors: the package 'supervision' at ")
    assert "supervision 0.31.2" in last
    assert "separate virtual environment" in last
    assert "cv2" not in done.stderr  # the other package's code never ran


def test_ours_installed_over_the_other_is_refused_too(tmp_path: Path) -> None:
    install_foreign_dist(tmp_path, package_from=OURS)
    done = import_actors(tmp_path)
    assert done.returncode == 1
    assert "belongs to another distribution, supervision 0.31.2" in done.stderr


def test_a_foreign_supervision_without_metadata_is_refused(tmp_path: Path) -> None:
    (tmp_path / "supervision").mkdir()
    (tmp_path / "supervision" / "__init__.py").write_text("")
    done = import_actors(tmp_path)
    assert done.returncode == 1
    assert "is not the one hystrix-actors ships" in done.stderr
    assert str(tmp_path / "supervision" / "__init__.py") in done.stderr


def test_ours_alone_imports(tmp_path: Path) -> None:
    done = import_actors(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
