"""Evaluate a saved MedBind model as the paper does: retrieval, zero-shot, few-shot, cross-modality zero-shot, t-SNE.

    python training/run_evaluation.py --model_name_or_path DIR --dataset_dir DATA --split test --output_dir OUT

Every argument is a field of `medbind_training.evaluate.EvaluationArguments` (`--help` lists them); a single
YAML / JSON file of them works too.
"""

from medbind_training.evaluate import main

if __name__ == "__main__":
    main()
