"""PhysioNet's credentialed licence, stated once: the dataset cards of the MIMIC builds and the model cards of
weights trained on them read it from here."""

from __future__ import annotations

# The Hub's licence metadata of credentialed PhysioNet data (MIMIC-CXR, MIMIC-IV, MIMIC-IV-Note) and of what is
# derived from it.
PHYSIONET_CREDENTIALED_LICENSE = {
    "license": "other",
    "license_name": "physionet-credentialed-health-data-license-1.5.0",
    "license_link": "https://physionet.org/about/licenses/physionet-credentialed-health-data-license-150/",
}


def physionet_credentialed(data: str, not_even: str = "") -> dict[str, str]:
    """The licence fields of a `dataset_card.DataSource` for data under PhysioNet's credentialed terms.

    Args:
        data: what the build holds and why it is credentialed, the sentence's subject (e.g. `"Credentialed PhysioNet
            data (MIMIC-IV)"`).
        not_even: what else no public upload covers, e.g. `", not even of the shrunk images"`.
    """
    access = (
        f"{data}: use it only as a PhysioNet credentialed user under the PhysioNet Credentialed Health Data Use "
        f"Agreement 1.5.0, do not redistribute it (no public upload{not_even}), and share it only with credentialed "
        "users of the same projects."
    )
    return {**PHYSIONET_CREDENTIALED_LICENSE, "access": access}
