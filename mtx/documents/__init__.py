"""Documents: text cut into the sentences a model translates and put back together from their translations, in
the formats people have (plain text line for line, HTML). No model and no HTTP here."""
