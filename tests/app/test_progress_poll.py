"""Open pages poll their uploads' progress without starving the indexing they watch (issue 24).

Every session with an upload in flight reruns its progress fragment once a second. Streamlit's
default (``runner.postScriptGC``) ends every script run, a fragment's included, with a full
``gc.collect(2)``: with the library and its embedders loaded that walks about 200k objects and
holds the GIL for 130-250 ms (bench/README.md, "Issue 24: load"). Eight sessions polling made
eight of those a second, and the one indexing thread waited behind them: eight small uploads took
88-95 s to index instead of 8-11 s (357 full collections, 87 s of them, during the wait).
"""

from __future__ import annotations

from pathlib import Path

from streamlit import config


def test_a_script_run_does_not_end_with_a_full_garbage_collection(data_dir: Path) -> None:
    # What `streamlit run` reads in the app's folder (.streamlit/config.toml; the fixture is there).
    config.get_config_options(force_reparse=True)
    assert config.get_option("runner.postScriptGC") is False, (
        "every script run, each progress poll included, would end with gc.collect(2)"
    )
