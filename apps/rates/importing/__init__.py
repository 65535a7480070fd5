"""Price-list import: parse (CSV/XLSX), validate with line numbers, stage, diff, activate."""
