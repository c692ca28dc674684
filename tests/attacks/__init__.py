"""The attack catalogue of ``shared/research/security.md`` §3, one module per group A–I."""
