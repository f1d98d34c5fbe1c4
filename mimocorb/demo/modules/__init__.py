"""The muon demo's worker modules (``mimocorb demo --copy`` puts them into a template)."""
