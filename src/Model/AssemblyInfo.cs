namespace E3.Model;
