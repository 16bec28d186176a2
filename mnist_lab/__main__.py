from mnist_lab.train import main

main()
