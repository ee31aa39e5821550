"""
@article{Lamm2024,
  title = {{MemBrain} v2: an end-to-end tool for the analysis of membranes in cryo-electron tomography},
  author = {Lamm, Lorenz and Zufferey, Simon and Righetto, Ricardo D. and Wietrzynski, Wojciech and Yamauchi, Kevin A. and Burt, Alister and Liu, Ye and Zhang, Hanyi and Martinez-Sanchez, Antonio and Ziegler, Sebastian and Isensee, Fabian and Schnabel, Julia A. and Engel, Benjamin D. and Peng, Tingying},
  journal = {bioRxiv},
  year = {2024},
  doi = {10.1101/2024.01.05.574336},
  url = {https://doi.org/10.1101/2024.01.05.574336}
}
"""
