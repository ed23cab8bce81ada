"""The README's two commands, CI and the option reference stay true to the code."""

import re
from pathlib import Path

from preftune.config import ALIASES, TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    main_cmd, test_cmd = _bash_blocks(readme)[:2]
    assert "\n" not in main_cmd and "\n" not in test_cmd
    assert main_cmd.startswith("python3 -m pip install torch==2.13.0 && ")
    # Debian's chromium first (the browser tests drive it), then torch's CPU build.
    assert test_cmd.startswith("(command -v chromium >/dev/null || (apt-get update -qq && "
                               "apt-get install -y -qq chromium >/dev/null)) && "
                               "python3 -m pip install -q torch==2.13.0 && ")
    assert test_cmd.endswith("python3 -m pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.rstrip().splitlines()[-1] == test_cmd


def test_configuration_doc_lists_every_option_and_alias():
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in TrainConfig.model_fields:
        assert f"| `{name}` |" in doc, name
    for alias in ALIASES:
        assert f"`{alias}`" in doc, alias
