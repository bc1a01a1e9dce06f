"""The project's pipelines, one folder each; ``find_pipelines`` registers them."""

# Node tags that pick a SLURM resource profile (conf/slurm/slurm.yml); Kedro tags allow no ":".
GPU_TAG = "slurm.gpu"
CPU_LARGE_TAG = "slurm.cpu_large"
