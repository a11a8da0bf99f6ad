"""Issue 21, item 8: without Qt's xcb libraries the GUI says what to install, not exit 134."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from fitbench.ui import app


def test_this_machine_has_what_the_xcb_plugin_needs() -> None:
    # CI installs the packages .ci/run lists; the check must not invent a missing library
    assert app.missing_xcb_libraries() == {}


def test_a_missing_library_is_named_with_its_package() -> None:
    wanted = {"libfitbench-no-such-library.so.7": "libfitbench-nope7", "libc.so.6": "libc6"}
    assert app.missing_xcb_libraries(wanted) == {
        "libfitbench-no-such-library.so.7": "libfitbench-nope7"
    }


@pytest.mark.parametrize(
    ("env", "xcb"),
    [
        ({"QT_QPA_PLATFORM": "offscreen"}, False),
        ({"QT_QPA_PLATFORM": "xcb"}, True),
        ({"QT_QPA_PLATFORM": "xcb:display=:1"}, True),
        ({"QT_QPA_PLATFORM": "", "WAYLAND_DISPLAY": "wayland-0"}, False),
        ({"QT_QPA_PLATFORM": "", "WAYLAND_DISPLAY": ""}, True),
    ],
)
def test_which_platform_qt_will_use(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], xcb: bool
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert app._uses_xcb() is xcb


def test_the_gui_exits_with_what_to_install_instead_of_aborting() -> None:
    """Before: Qt's "could not load the Qt platform plugin xcb" and SIGABRT (exit 134)."""
    script = textwrap.dedent(
        """
        import sys
        from fitbench.ui import app
        app.XCB_LIBRARIES = {**app.XCB_LIBRARIES, "libxcb-cursor-missing.so.0": "libxcb-cursor0"}
        sys.exit(app.run_app(quit_after_paint=True))
        """
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "DISPLAY": ":97"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    assert "libxcb-cursor-missing.so.0" in proc.stderr
    assert "sudo apt-get install libxcb-cursor0" in proc.stderr
    assert "Traceback" not in proc.stderr and "Aborted" not in proc.stderr
