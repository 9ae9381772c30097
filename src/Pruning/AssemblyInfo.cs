namespace E3.Pruning;
