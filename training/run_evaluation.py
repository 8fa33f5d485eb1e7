"""Evaluate a saved MedBind model as the paper does (`--help` lists the arguments; `medbind_training.evaluation`).

    python training/run_evaluation.py --model_name_or_path DIR --dataset_dir DATA --split test --output_dir OUT
"""

from medbind_training.evaluation import main

if __name__ == "__main__":
    main()
