"""Reading, fetching and deriving the data the toolkit trains and evaluates on."""
