"""Installs cqr_rasa: contextual query rewriting for Rasa 3.6 bots."""
from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="cqr_rasa",
    version="0.1.0",
    description="Contextual query rewriting (pointer-generator) as a Rasa 3.6 NLU component",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["cqr_rasa", "cqr_rasa.*"]),
    python_requires=">=3.8,<3.11",
    install_requires=[
        "rasa[spacy]>=3.6.21,<3.7",
        "torch>=2.0",
        "spacy>=3.4,<3.5",
        "numpy",
        "safetensors>=0.4",
        "sacrebleu>=2.3",
        "tqdm",
    ],
    extras_require={
        "dev": [
            "pytest>=7",
            "hypothesis>=6",
            "transformers>=4.36,<4.37",
            "redis>=4",
        ],
    },
    entry_points={"console_scripts": ["cqr-rasa = cqr_rasa.cli:main"]},
)
