"""Insights: what the stages' records say when read together. A customer's whole story; later the measures,
the holdout experiment and the reports. Reads every stage's tables; writes none."""
