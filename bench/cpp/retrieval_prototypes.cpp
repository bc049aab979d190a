// Throwaway prototypes behind the chunked layout's design (docs/RETRIEVAL.md, "Alternatives"),
// kept so the figures there can be reproduced; not part of the build.
//
//   g++ -O2 -march=native -o /tmp/retrieval_prototypes bench/cpp/retrieval_prototypes.cpp
//   /tmp/retrieval_prototypes MODE KEYS CELLS_PER_KEY TRIALS
//
// MODE 0: k keys, 4 cells uniform over m = ceil(c k) cells, plain incremental Gaussian
//         elimination on m-bit rows (full rank = success). MODE 1: "banded" rows, a start s
//         uniform in [0, m - 64] and 3 more cells in (s, s + 64), ribbon-style insertion.
// Prints the fraction of seeds whose system has full rank, and ns per key.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <chrono>
#include <cstring>
static uint64_t sm(uint64_t z){z+=0x9E3779B97F4A7C15ull;z=(z^(z>>30))*0xBF58476D1CE4E5B9ull;z=(z^(z>>27))*0x94D049BB133111EBull;return z^(z>>31);}
// dense GF(2) with W words per row: rows k, cols m. return true if full row rank.
bool dense(int k,int m,uint64_t seed){
  int W=(m+63)/64; std::vector<uint64_t> rows((size_t)k*W,0);
  for(int i=0;i<k;i++){uint64_t h=sm(seed*1000003+i);for(int j=0;j<4;j++){uint32_t c=(uint32_t)(((h>>(16*j))&0xFFFF)*m>>16);rows[(size_t)i*W+c/64]^=1ull<<(c%64);} }
  // incremental: pivot per column
  std::vector<int> piv(m,-1); std::vector<uint64_t> prow((size_t)m*W);
  std::vector<uint64_t> r(W);
  for(int i=0;i<k;i++){ memcpy(r.data(),&rows[(size_t)i*W],8*W);
    int w0=0; for(;;){ while(w0<W&&!r[w0])w0++; if(w0==W) return false; int c=w0*64+__builtin_ctzll(r[w0]);
      if(piv[c]<0){piv[c]=i;memcpy(&prow[(size_t)c*W],r.data(),8*W);break;}
      const uint64_t*p=&prow[(size_t)c*W]; for(int w=w0;w<W;w++) r[w]^=p[w]; } }
  return true;
}
// banded: start s in [0,m-Wd], bit0 set plus 3 random in [1,64)
bool banded(int k,int m,uint64_t seed,int Wd){
  std::vector<uint64_t> piv(m,0);
  for(int i=0;i<k;i++){uint64_t h=sm(seed*1000003+i); uint32_t s=(uint32_t)((((h>>32))*(uint64_t)(m-Wd+1))>>32);
    uint64_t row=1; for(int j=0;j<3;j++){row|=1ull<<(1+((h>>(10*j))%(Wd-1)));}
    for(;;){ if(!piv[s]){piv[s]=row;break;} row^=piv[s]; if(!row) return false; int tz=__builtin_ctzll(row); row>>=tz; s+=tz; } }
  return true;
}
int main(int argc,char**argv){
  int mode=atoi(argv[1]); int k=atoi(argv[2]); int trials=atoi(argv[4]); double c=atof(argv[3]);
  int m=(int)(k*c+0.999); int ok=0; auto t0=std::chrono::steady_clock::now();
  for(int t=0;t<trials;t++) ok+= mode==0? dense(k,m,t+1): banded(k,m,t+1,64);
  double ns=std::chrono::duration<double,std::nano>(std::chrono::steady_clock::now()-t0).count()/trials/k;
  printf("mode %d k %d c %.3f m %d success %.3f ns/key %.1f\n",mode,k,c,m,ok/(double)trials,ns);
}
