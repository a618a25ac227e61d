// Run an AOTInductor package of a LiftPool network from C++, with no Python in the process.
//
//   run_aoti_package <package.pt2> <liftpool ops library> <input.bin> N C H W <output prefix>
//
// The ops library (liftpool_ops_<key>.so, printed by `liftpool build`) registers the liftpool::
// operators the package calls; it is loaded first.  The input is a float32 NCHW tensor stored as raw
// native-endian values; every output i is written to <prefix><i>.bin (raw float32, contiguous) and its
// sizes to <prefix><i>.shape (one per line).  Exit status 0 and "ok <outputs>" on success.
//
// Build (<torch>: the installed torch package folder, python -c "import torch; print(torch.__path__[0])"):
//   g++ -std=c++20 run_aoti_package.cpp -I<torch>/include -I<torch>/include/torch/csrc/api/include
//     -L<torch>/lib -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -ldl -Wl,-rpath,<torch>/lib -o run_aoti_package
// (--no-as-needed: the package's model library needs libtorch.so already loaded.)
#include <ATen/ATen.h>
#include <dlfcn.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <cstdio>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 9) {
    std::fprintf(stderr, "usage: %s <package.pt2> <ops library> <input.bin> N C H W <output prefix>\n", argv[0]);
    return 2;
  }
  if (dlopen(argv[2], RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    std::fprintf(stderr, "cannot load the liftpool ops library %s: %s\n", argv[2], dlerror());
    return 1;
  }
  try {
    std::vector<int64_t> sizes;
    for (int i = 4; i < 8; ++i) {
      sizes.push_back(std::stoll(argv[i]));
      if (sizes.back() < 1) {
        std::fprintf(stderr, "input sizes must be >= 1, got %s\n", argv[i]);
        return 2;
      }
    }
    at::Tensor x = at::empty(sizes, at::kFloat);
    std::ifstream in(argv[3], std::ios::binary);
    in.read(reinterpret_cast<char*>(x.data_ptr<float>()), static_cast<std::streamsize>(x.numel() * sizeof(float)));
    if (!in || in.peek() != std::char_traits<char>::eof()) {
      std::fprintf(stderr, "%s does not hold exactly %lld float32 values\n", argv[3],
                   static_cast<long long>(x.numel()));
      return 2;
    }
    torch::inductor::AOTIModelPackageLoader loader(argv[1]);
    std::vector<at::Tensor> outputs = loader.run({x});
    for (size_t i = 0; i < outputs.size(); ++i) {
      at::Tensor out = outputs[i].to(at::kFloat).contiguous();
      const std::string prefix = std::string(argv[8]) + std::to_string(i);
      std::ofstream bin(prefix + ".bin", std::ios::binary);
      bin.write(reinterpret_cast<const char*>(out.data_ptr<float>()),
                static_cast<std::streamsize>(out.numel() * sizeof(float)));
      std::ofstream shape(prefix + ".shape");
      for (int64_t s : out.sizes()) shape << s << "\n";
      if (!bin || !shape) {
        std::fprintf(stderr, "cannot write %s.bin / .shape\n", prefix.c_str());
        return 1;
      }
    }
    std::printf("ok %zu\n", outputs.size());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
