"""Pretrain MEDBind_BD, MEDBind_NM or ECG-CLIP and leave a Hub-ready model folder.

    accelerate launch training/pretrain.py --preset demo                 # synthetic data, tiny model, CPU, minutes
    accelerate launch training/pretrain.py --dataset_dir DATA --output_dir OUT [--variant nm] [--bf16 true]
    python training/pretrain.py my_run.yaml                              # a copy of a preset, edited

Presets: `training/medbind_training/presets/pretrain/{demo,paper}.yaml` (`paper`, the paper's recipe, unless another
is named); arguments on the command line override the preset's. `--help` lists every argument
(`medbind_training.pretraining_arguments`). From an installed wheel: `python -m medbind_training.pretraining`.
"""

from medbind_training.pretraining import main

if __name__ == "__main__":
    main()
