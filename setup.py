"""One distribution, three import names: the engine and its two adapters (DESIGN.md §1)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "core/bilayer/_version.py").read_text()).group(1)

setup(
    name="bilayer",
    version=VERSION,
    description="Membrane segmentation for cryo-electron tomograms (MemBrain v2 method), "
    "with a Scipion plugin and RELION External jobs",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    package_dir={
        "bilayer": "core/bilayer",
        "bilayer_scipion": "scipion_plugin/bilayer_scipion",
        "bilayer_relion": "relion_external/bilayer_relion",
    },
    packages=[
        *find_packages(where="core", include=["bilayer", "bilayer.*"]),
        *find_packages(where="scipion_plugin", include=["bilayer_scipion", "bilayer_scipion.*"]),
        *find_packages(where="relion_external", include=["bilayer_relion", "bilayer_relion.*"]),
    ],
    include_package_data=True,
    package_data={
        "bilayer": ["model/weights/*.bilayer.pt"],  # the embedded default model
        "bilayer_scipion": ["protocols.conf"],  # where the protocols appear in Scipion's menus
    },
    install_requires=[
        # torch: a range, so a GPU user gets the build for their machine; on a CPU-only
        # machine install `torch==<version>` first or in the same pip command.
        "torch>=2.1",
        "monai>=1.3",
        "numpy>=1.24",
        "scipy>=1.10",
        "mrcfile>=1.4",
        "starfile>=0.5",
        "click>=8.1",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        "nibabel>=4",  # NIfTI training patches, MemBrain-seg's format
        "pyyaml>=5.4",  # training settings files
        "pynrrd>=1.0",  # NRRD correction masks (MITK), MemBrain-seg's annotation workflow
        "scikit-image>=0.21",  # marching cubes of membrane surfaces
        "trimesh>=4.0",  # meshes: smoothing, components, OBJ/PLY/STL/GLB files (pure Python)
        "gpytoolbox>=0.2",  # isotropic re-meshing and discrete curvatures (one small compiled wheel)
    ],
    extras_require={
        "scipion": ["scipion-pyworkflow>=3.11", "scipion-em>=3.11", "scipion-em-tomo>=3.12"],
        "dist": ["submitit>=1.5"],
        "dev": ["pytest>=7", "pytest-timeout>=2.1"],
    },
    entry_points={
        "console_scripts": [
            "bilayer = bilayer.cli:main",
            "bilayer-relion-preprocess = bilayer_relion.preprocess_job:main",
            "bilayer-relion-segment = bilayer_relion.segment_job:main",
            "bilayer-relion-surfaces = bilayer_relion.surfaces_job:main",
            "bilayer-relion-train = bilayer_relion.train_job:main",
        ],
        "pyworkflow.plugin": ["bilayer_scipion = bilayer_scipion"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
        "Topic :: Scientific/Engineering :: Image Processing",
    ],
)
