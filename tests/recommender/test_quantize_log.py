"""The int8 build mutes onnxruntime's "consider pre-processing" hint without muting the
process: it raised the root logger's level to ERROR for the build's seconds, and every other
thread's warnings were lost meanwhile (a `tidings run` collecting while it builds its model;
in the suite, tests after a model build found no warning in caplog)."""

from __future__ import annotations

import logging
import threading

from recommender import onnx_embed


def test_the_build_mutes_its_own_root_warnings_and_no_other_threads(tmp_path, monkeypatch, caplog):
    other_logged = threading.Event()

    def quantize_dynamic(src, dst, **kw):
        logging.warning("Please consider to run pre-processing before quantization.")
        logging.error("a real failure stays")

        def other():
            logging.getLogger("tidings.collect").warning("fetch.failed source=x")
            logging.warning("another thread's own root warning")
            other_logged.set()

        t = threading.Thread(target=other)
        t.start()
        t.join()

    import onnxruntime.quantization as q

    monkeypatch.setattr(q, "quantize_dynamic", quantize_dynamic)
    caplog.set_level(logging.WARNING)
    onnx_embed._quantize_int8(tmp_path / "a.onnx", tmp_path / "b.onnx", reduce_range=False)
    assert other_logged.is_set()
    said = caplog.messages
    assert "fetch.failed source=x" in said and "another thread's own root warning" in said
    assert "a real failure stays" in said
    assert not [m for m in said if m.startswith("Please consider")]
    assert not logging.getLogger().filters  # the mute is gone after the build
