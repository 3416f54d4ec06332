"""Quality gate: the five criteria as plain functions over a question row, the defects
StaffML's own reviews kept finding, and Great Expectations suites."""
