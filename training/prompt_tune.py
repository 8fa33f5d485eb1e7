"""Prompt-tune a clinical language model with MedBind embedding tokens (the paper's Table 4).

    accelerate launch training/prompt_tune.py --preset demo --task mortality --mode medbind

`--help` lists every argument (`medbind_training.prompt_tune`).
"""

from medbind_training.prompt_tune import main

if __name__ == "__main__":
    main()
