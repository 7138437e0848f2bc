"""The consistency-model engine: plain tensor code, ignorant of which backbone it runs."""
