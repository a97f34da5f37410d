// The parts of the test_cuda_emu program (each file checks one group of launchers).
#pragma once

#include <random>

// cuda/optim.cu and cuda/nn.cu (test_optim_nn.cpp).
template <typename T>
void run_optim_nn(std::mt19937_64& rng);

// cuda/norm.cu (test_norm.cpp).
template <typename T>
void run_norm(std::mt19937_64& rng);

// cuda/rnn.cu (test_rnn.cpp).
template <typename T>
void run_rnn(std::mt19937_64& rng);

// cuda/embedding.cu (test_embedding.cpp).
template <typename T>
void run_embedding(std::mt19937_64& rng);
