"""Static legality audit (golf-check). Never imports torch; never executes submission code."""
