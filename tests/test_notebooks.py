"""Execute the example notebooks end to end (a 1-epoch search into a temporary folder)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "01_search_and_inspect.ipynb"


def _ensure_python3_kernelspec() -> None:
    from jupyter_client.kernelspec import find_kernel_specs

    if "python3" not in find_kernel_specs():
        import ipykernel.kernelspec

        ipykernel.kernelspec.install(user=True)


def _outputs(nb) -> list[dict]:
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


def _text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    return str(output.get("data", {}).get("text/plain", ""))


def test_search_and_inspect_notebook_runs(tmp_path, monkeypatch):
    # The kernel is a child process: it inherits these variables.
    monkeypatch.setenv("DARTS_NOTEBOOK_EPOCHS", "1")
    monkeypatch.setenv("DARTS_NOTEBOOK_CHANNELS", "4")
    monkeypatch.setenv("DARTS_NOTEBOOK_LAYERS", "2")
    monkeypatch.setenv("DARTS_NOTEBOOK_OUTPUT", str(tmp_path))
    _ensure_python3_kernelspec()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}})
    client.execute()  # raises CellExecutionError if a cell fails

    errors = [o for o in _outputs(nb) if o.get("output_type") == "error"]
    assert not errors, errors
    assert list(tmp_path.glob("**/genotype.json")), f"no genotype.json under {tmp_path}"
    assert any("Genotype(normal=" in _text(o) for o in _outputs(nb)), "the genotype was not printed"
    assert any("image/png" in o.get("data", {}) for o in _outputs(nb)), "no figure was displayed"
