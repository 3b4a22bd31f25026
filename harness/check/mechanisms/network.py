"""PG301: network access or downloads while the submission runs.

Why: the README FAQ requires a self-contained artifact — "No external downloads, training
dataset access, or network calls are allowed during evaluation". Calls are matched after
resolving import aliases; ``socket.gethostname()`` (used for DDP logging) and bare imports
are not network access. A separate data-prep script the entry script never imports (e.g.
``cached_challenge_fineweb.py``, ``prepare_*.py``) runs before training and is only noted.
"""

from __future__ import annotations

import re

import libcst as cst

from harness.check.tree.index import ModuleIndex
from harness.check.tree.nodes import call_name, strings_in

from .hit import Hit, step
from .imports import qualified, run_at_evaluation

NETWORK_CALLS = re.compile(
    r"^(requests\.(get|post|put|head|patch|delete|request|Session|session)"
    r"|urllib\.request\.(urlopen|urlretrieve|build_opener)"
    r"|urllib3\.\w+|httpx\.\w+|aiohttp\.\w+|http\.client\.(HTTPConnection|HTTPSConnection)"
    r"|socket\.(socket|create_connection)"
    r"|huggingface_hub\.(hf_hub_download|snapshot_download|HfApi|HfFileSystem|login|list_repo_files|hf_hub_url)"
    r"|datasets\.load_dataset|torch\.hub\.(load|download_url_to_file|load_state_dict_from_url)"
    r"|wget\.download|gdown\.download|nltk\.download|ftplib\.FTP|smtplib\.SMTP)$"
)
_SHELL_CALLS = re.compile(
    r"^(subprocess\.(run|call|check_call|check_output|Popen|getoutput|getstatusoutput)|os\.(system|popen))$"
)
_SHELL_NETWORK = re.compile(
    r"\b(wget|curl|git\s+clone|huggingface-cli|hf\s+download|aws\s+s3|gsutil|scp|rsync)\b|\bpip3?\b.*\binstall\b",
    re.IGNORECASE,
)


def _network_call(call: cst.Call, aliases: dict[str, str]) -> str | None:
    name = qualified(call_name(call), aliases)
    if NETWORK_CALLS.match(name):
        return name
    match = _SHELL_NETWORK.search(" ".join(strings_in(call))) if _SHELL_CALLS.match(name) else None
    return f"{name}({match.group(0).strip()!r})" if match else None


def find_network(indexes: list[ModuleIndex]) -> list[Hit]:
    at_eval = run_at_evaluation(indexes)
    hits: list[Hit] = []
    for index in indexes:
        for call in index.calls:
            what = _network_call(call, index.aliases)
            if what is None:
                continue
            message = f"`{what}` reaches the network while the submission runs; the artifact must be self-contained"
            situation = None
            if id(index) not in at_eval:
                message = (
                    f"`{what}` downloads in {index.name}, a script the entry script does not import "
                    "(data preparation before training, not evaluation)"
                )
                situation = "preparation-script"
            path = (step(index, call, "network access"),)
            hits.append(Hit("PG301", index, index.enclosing_statement(call), message, path, when=situation))
    return hits
