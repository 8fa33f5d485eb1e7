"""Evaluate a saved MedBind model as the paper does: retrieval, zero-shot, few-shot, cross-modality zero-shot, t-SNE.

    python training/run_evaluation.py --model_name_or_path DIR --dataset_dir DATA --split test --output_dir OUT

Every argument is a field of `medbind_training.evaluation.EvaluationArguments` (`--help` lists them); a YAML / JSON
file of them (`--preset FILE`, or the file alone) works too. From an installed wheel:
`python -m medbind_training.evaluation`.
"""

from medbind_training.evaluation import main

if __name__ == "__main__":
    main()
