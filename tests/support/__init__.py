"""Test helpers shared by every test area: one condition wait (`waits`), one store reader (`store`)
and one site builder (`site`)."""
