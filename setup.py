from setuptools import find_packages, setup

setup(
    name="mmt-upgrade",
    version="0.1.0",
    description="Upgrade a trained fairseq multilingual MT model with new languages without forgetting",
    python_requires=">=3.11",
    # The library and its fairseq plugins (`mmt-upgrade plugin-dir` prints the path for --user-dir).
    packages=find_packages(include=["mmt_upgrade", "mmt_upgrade.*", "fairseq_plugins", "fairseq_plugins.*"]),
    package_data={"mmt_upgrade": ["configs/*.yaml"]},
    # The ways out of fairseq (`mmt-upgrade import/export`, `evaluate --backend ct2`); the bootstrap installs both.
    extras_require={
        "hf": ["transformers==4.57.6", "safetensors==0.8.0"],
        "ct2": ["ctranslate2==4.8.5"],
    },
    entry_points={"console_scripts": ["mmt-upgrade=mmt_upgrade.cli:main"]},
)
