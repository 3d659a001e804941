"""Models: HICD-BERT (token-level hierarchy) and HICD-Graph (graph-level hierarchy), plus shared plumbing."""
