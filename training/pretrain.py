"""Pretrain MEDBind_BD, MEDBind_NM or ECG-CLIP and leave a Hub-ready model folder.

    accelerate launch training/pretrain.py --preset demo                 # synthetic data, tiny model, CPU, minutes
    accelerate launch training/pretrain.py --dataset_dir DATA --output_dir OUT [--variant nm] [--bf16 true]
    python training/pretrain.py config.yaml                              # the same arguments from a YAML/JSON file

`--help` lists every argument (`medbind_training.pretrain`).
"""

from medbind_training.pretrain import main

if __name__ == "__main__":
    main()
