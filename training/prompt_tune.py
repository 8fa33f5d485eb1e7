"""Prompt-tune a clinical language model with MedBind embedding tokens (the paper's Table 4).

    accelerate launch training/prompt_tune.py --preset demo --task mortality --mode medbind      # synthetic, CPU
    accelerate launch training/prompt_tune.py --dataset_dir DATA --medbind_model MODEL --task readmission \\
        --mode medbind --output_dir OUT [--bf16]

Presets: `training/medbind_training/presets/prompt_tune/{demo,paper}.yaml` (`paper` unless another is named);
arguments on the command line override the preset's. `--help` lists every argument
(`medbind_training.prompt_tuning_arguments`). From an installed wheel: `python -m medbind_training.prompt_tuning`.
"""

from medbind_training.prompt_tuning import main

if __name__ == "__main__":
    main()
