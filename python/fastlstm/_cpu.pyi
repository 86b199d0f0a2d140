# The baseline-ISA C module (csrc/python/cpu_check.c) that says whether this CPU runs a core.
from typing import List

def missing_features(isa: str = "avx2") -> List[str]: ...
