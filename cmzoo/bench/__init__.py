"""`cmzoo bench`: efficiency (paper Fig. 2, Tables 2–3) and fixed-budget quality of backbones."""

from cmzoo.bench.config import BenchConfig, make_bench_config
from cmzoo.bench.efficiency import model_counts, multires_fps
from cmzoo.bench.harness import run_bench
from cmzoo.bench.results import BenchResult, Record

__all__ = ["BenchConfig", "BenchResult", "Record", "make_bench_config", "model_counts", "multires_fps", "run_bench"]
