"""Test helpers shared by every test area: one condition wait (`waits`), one store reader (`store`),
one site builder (`site`) and the free ports of parallel test workers (`ports`)."""
