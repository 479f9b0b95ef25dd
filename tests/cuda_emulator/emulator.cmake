# The CUDA emulator build (-DTRN_CUDA_EMULATOR=ON; see tests/cuda_emulator/include/cuda_runtime.h): the CUDA sources
# rewritten by scripts/cuda_emu_rewrite.py and compiled as C++ against the emulator's headers, so the CUDA backend
# and its tests run on the CPU. __CUDA_ARCH__ is 900 for them, so the device branches (sm_80 mma, sm_90 paths) are
# the ones that run; TRN_CUDA_PASCAL picks the Pascal paths as on a GPU.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
set(TRN_EMU_DIR ${CMAKE_SOURCE_DIR}/tests/cuda_emulator)

# trn_emulated_sources(OUT_VAR file.cu...): the rewritten copies (.cpp in the build folder), with the emulator's
# compile settings; OUT_VAR receives their paths.
function(trn_emulated_sources out_var)
  set(outputs "")
  foreach(src ${ARGN})
    get_filename_component(abs ${src} ABSOLUTE)
    file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR} ${abs})
    string(REPLACE "/" "_" flat ${rel})
    set(out ${CMAKE_BINARY_DIR}/cuda_emulated/${flat}.cpp)
    add_custom_command(OUTPUT ${out}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/cuda_emulated
      COMMAND Python3::Interpreter ${CMAKE_SOURCE_DIR}/scripts/cuda_emu_rewrite.py ${abs} ${out}
      DEPENDS ${abs} ${CMAKE_SOURCE_DIR}/scripts/cuda_emu_rewrite.py
      COMMENT "Rewriting ${rel} for the CUDA emulator" VERBATIM)
    get_filename_component(dir ${abs} DIRECTORY)
    # -ffp-contract=off: one rounding per _rn intrinsic; -fno-strict-aliasing: the kernels reinterpret byte buffers
    # as vectors, which nvcc allows; -Wno-*uninitialized: the kernels' prefetch loops copy registers of a next row
    # that the last iteration did not load (and never uses).
    set_source_files_properties(${out} PROPERTIES
      COMPILE_OPTIONS "-ffp-contract=off;-fno-strict-aliasing;-Wall;-Wno-unused-function;-Wno-unknown-pragmas;\
-Wno-uninitialized;-Wno-maybe-uninitialized"
      COMPILE_DEFINITIONS "__CUDA_ARCH__=900;TRN_CUDA_EMULATOR=1"
      INCLUDE_DIRECTORIES "${TRN_EMU_DIR}/include;${dir};${CMAKE_SOURCE_DIR};${CMAKE_SOURCE_DIR}/tests")
    list(APPEND outputs ${out})
  endforeach()
  set(${out_var} ${outputs} PARENT_SCOPE)
endfunction()
