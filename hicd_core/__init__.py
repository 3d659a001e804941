"""HICD Explorer engine: ICD-10-CM hierarchy -> cohorts -> models -> experiments -> analysis.

Layers only import downward: ``hierarchy`` knows nothing of cohorts, ``cohort`` nothing of
models, and so on. The Streamlit pages and the CLI sit on top and call these layers.
"""

__version__ = "0.1.0"

#: Bumped whenever a change alters what a cached artifact would contain. Caches and run
#: keys include it, so stale artifacts are rebuilt rather than silently reused.
CODE_VERSION = "3"  # 3: Platt recalibration with every run, paper HICD-Graph without early stop,
#                     prefix levels for codes the ontology lacks (2: eICU stay order, backward GEMs)
