"""What a run or a comparison shows: the report, its charts, a published site."""
