"""The MedBind web demo, as a Hugging Face Space runs it: `python app.py [--model DIR] [--index INDEX]`.

The page itself is `medbind/app.py`; this file gives it the repository's prompt sets and the script that trains the
demo model when `outputs/medbind-demo-bd` is absent.
"""

import sys
from pathlib import Path

from medbind.app import main

REPOSITORY = Path(__file__).resolve().parent

if __name__ == "__main__":
    sys.exit(main(prompts_dir=REPOSITORY / "training" / "medbind_training" / "prompts", pretrain_script=REPOSITORY / "training" / "pretrain.py"))
