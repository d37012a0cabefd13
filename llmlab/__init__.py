"""LLM Lab: reference implementations and helpers the lectures import once they have taught them."""

from pathlib import Path

__version__ = "0.1.0"

#: The repository checkout this package is installed from (an editable install).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Project-local cache for offline assets and rebuilt artefacts (git-ignored).
CACHE_DIR = PROJECT_ROOT / ".cache"
