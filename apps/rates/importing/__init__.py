"""Price-list import, the pure parts: parse (CSV/XLSX), validate with line numbers, report.

Staging, comparing and activating write, so they are apps/rates/services/ (imports,
pipeline, activation, versions).
"""
