"""Report sections: each module turns an `AnalysisContext` into a `Section` of the report."""
