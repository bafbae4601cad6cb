"""The HumanBeauty dataset: sources, face filter, scores, levels, QA pairs, export (SPEC 2)."""
