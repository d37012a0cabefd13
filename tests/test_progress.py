"""llmlab.progress: a notebook saved after a run stores finished bars, never the 0% first draw."""

import copy
import re

import nbclient
import nbformat

from llmlab.progress import tqdm


def _run(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbclient.NotebookClient(nb, timeout=120).execute()
    return nb


def _plain(cell) -> list[str]:
    return [o["data"]["text/plain"] for o in cell.outputs if o.output_type == "display_data"]


def test_saved_outputs_show_the_final_state_of_every_bar():
    nb = _run(
        "from llmlab.progress import tqdm\nfor _ in tqdm(range(5), desc='loop'):\n    pass",
        "with tqdm(total=3, desc='manual') as bar:\n    for _ in range(3):\n        bar.update()",
        "for _ in tqdm(range(4), desc='inner', leave=False):\n    pass",
        "bar = tqdm(range(10), desc='stopped')\nfor i in bar:\n    if i == 4:\n        break\n"
        "bar.close()",
    )
    loop, manual, inner, stopped = (_plain(c) for c in nb.cells)
    assert len(loop) == 1 and "100%" in loop[0] and "5/5" in loop[0]
    assert len(manual) == 1 and "3/3" in manual[0]
    assert len(inner) == 1 and "4/4" in inner[0], "a leave=False bar keeps its final line"
    assert len(stopped) == 1 and "4/10" in stopped[0], "a bar closed early shows where it stopped"
    widget = "application/vnd.jupyter.widget-view+json"
    assert widget in nb.cells[0].outputs[0]["data"], "the live widget bar is kept"
    assert all(o.output_type != "stream" or o["name"] != "stderr" for c in nb.cells
               for o in c.outputs), "nothing on stderr"


def test_outside_a_kernel_it_is_the_text_bar(capsys):
    assert list(tqdm(range(3), desc="text")) == [0, 1, 2]
    assert "3/3" in capsys.readouterr().err


def test_pruning_keeps_shown_widgets_and_what_they_refer_to():
    from autograder.lectures import WIDGET_STATE, WIDGET_VIEW, prune_widget_state

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
        "display_data", data={WIDGET_VIEW: {"model_id": "aa", "version_major": 2}})])]
    state = {"aa": {"state": {"children": ["IPY_MODEL_bb"]}}, "bb": {"state": {"style":
             "IPY_MODEL_cc"}}, "cc": {"state": {}}, "dd": {"state": {"description": "dropped"}}}
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": state, "version_major": 2}}
    assert prune_widget_state(nb) == 1
    assert set(nb.metadata["widgets"][WIDGET_STATE]["state"]) == {"aa", "bb", "cc"}


def test_committed_lectures_show_no_frozen_bar_stderr_or_orphaned_widget():
    """What a learner opens on GitHub: every bar finished (or stopped where its loop ended),
    nothing on stderr, and no saved widget that no output shows."""
    from autograder.lectures import WIDGET_STATE, lectures, prune_widget_state

    assert lectures(), "the lectures are found"
    for path in lectures():
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                text = out.get("text", "") + out.get("data", {}).get("text/plain", "")
                assert not (out.get("output_type") == "stream" and out.get("name") == "stderr"), \
                    f"{path.name}: output on stderr"
                assert not re.search(r"(?<![0-9])0%\|", text), f"{path.name}: a bar at 0%"
        state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
        for model in state.values():
            values = model.get("state", {})
            if model.get("model_name") == "FloatProgressModel" and values.get("max"):
                assert values.get("value", 0) > 0, f"{path.name}: a saved bar at 0"
        assert prune_widget_state(copy.deepcopy(nb)) == 0, \
            f"{path.name}: saved widgets that no output shows"
