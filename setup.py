from setuptools import find_packages, setup

setup(
    name="mmt-upgrade",
    version="0.1.0",
    description="Upgrade a trained fairseq multilingual MT model with new languages without forgetting",
    python_requires=">=3.11",
    # The library and its fairseq plugins (`mmt-upgrade plugin-dir` prints the path for --user-dir).
    packages=find_packages(include=["mmt_upgrade", "mmt_upgrade.*", "fairseq_plugins", "fairseq_plugins.*"]),
    package_data={"mmt_upgrade": ["configs/*.yaml"]},
    entry_points={"console_scripts": ["mmt-upgrade=mmt_upgrade.cli:main"]},
)
