"""What every rule family reads of a parsed source: one child reader (``children``), one
module index (``index``) and the small node helpers both are written with (``nodes``)."""
