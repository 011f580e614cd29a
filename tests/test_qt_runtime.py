"""The Qt binding itself: a release that leaks references on signal emission must never be installed.

PySide6 6.12.0 on Python 3.11 drops one reference to ``True`` on every ``emit`` (the value ``emit``
returns): after some thousands of emits the interpreter aborts with ``Fatal Python error: bool_dealloc``,
taking the window, its queue and its results with it. ``pyproject.toml`` therefore caps PySide6 below
6.12; this test is the guard that decides whether a release may be allowed (6.11.3 passes, 6.12.0 fails).
It runs in a subprocess so that the abort fails the test instead of ending pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys, threading
    from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

    class Emitter(QObject):
        value = Signal(object)
        plain = Signal()

    app = QCoreApplication([])
    src, got = Emitter(), []
    src.value.connect(lambda v: got.append(v))
    src.plain.connect(lambda: got.append(None))
    before = sys.getrefcount(True)
    for i in range(__N__):                      # direct connections, GUI thread
        src.value.emit(i)
        src.plain.emit()
    def worker():                           # queued connections, from another thread
        for i in range(__N__):
            src.value.emit(i)
    t = threading.Thread(target=worker)
    t.start(); t.join()
    QTimer.singleShot(0, app.quit)
    app.exec()                              # deliver the queued emits
    print(json.dumps({"delivered": len(got), "true_refcount_delta": sys.getrefcount(True) - before}))
""")


def test_signal_emission_does_not_leak_references():
    n = 10_000
    proc = subprocess.run([sys.executable, "-c", SCRIPT.replace("__N__", str(n))], capture_output=True, text=True,
                          timeout=120, env={"QT_QPA_PLATFORM": "offscreen", "PATH": ""})
    assert proc.returncode == 0, f"the interpreter died after emitting signals:\n{proc.stderr[-2000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["delivered"] == 3 * n
    # a leaking binding loses one reference per emit (30,000 here); a sound one loses none
    assert abs(out["true_refcount_delta"]) < 100, out
