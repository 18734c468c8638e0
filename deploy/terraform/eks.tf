# The EKS cluster (terraform-aws-modules/eks v21: inputs `name`, `kubernetes_version`,
# `addons`), its add-ons and two managed node groups on Amazon Linux 2023.
module "eks" {
  source  = "terraform-aws-modules/eks/aws"
  version = "~> 21.0"

  name               = var.name
  kubernetes_version = var.kubernetes_version

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  endpoint_public_access       = var.endpoint_public_access
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs

  # The identity running Terraform administers the cluster (an access entry, not aws-auth).
  enable_cluster_creator_admin_permissions = true

  # The OIDC provider for IRSA (logyard_auth = "irsa"); Pod Identity does not need it.
  enable_irsa = var.logyard_auth == "irsa"

  addons = {
    # Before any node exists: nodes then start with prefix delegation (a /28 per ENI slot, so
    # many more pods per node and fewer exhausted subnets) and the network policy agent that
    # enforces the chart's NetworkPolicies.
    vpc-cni = {
      before_compute = true
      configuration_values = jsonencode({
        enableNetworkPolicy = "true"
        env = {
          ENABLE_PREFIX_DELEGATION = "true"
          WARM_PREFIX_TARGET       = "1"
        }
      })
    }
    eks-pod-identity-agent = {
      before_compute = true
    }
    kube-proxy = {}
    coredns    = {}
    aws-ebs-csi-driver = {
      pod_identity_association = [{
        role_arn        = module.ebs_csi_pod_identity.iam_role_arn
        service_account = "ebs-csi-controller-sa"
      }]
    }
  }

  eks_managed_node_groups = {
    # Stateless work (jobs, controllers, shippers) on SPOT capacity across several types.
    spot = {
      ami_type       = "AL2023_x86_64_STANDARD"
      capacity_type  = "SPOT"
      instance_types = var.spot_instance_types

      min_size     = var.spot_node_group.min_size
      max_size     = var.spot_node_group.max_size
      desired_size = var.spot_node_group.desired_size
    }

    # The logyard StatefulSet (chart nodeSelector eks.amazonaws.com/capacityType: ON_DEMAND):
    # its write-ahead log volumes should not see SPOT interruptions.
    on_demand = {
      ami_type       = "AL2023_x86_64_STANDARD"
      capacity_type  = "ON_DEMAND"
      instance_types = var.on_demand_instance_types

      min_size     = var.on_demand_node_group.min_size
      max_size     = var.on_demand_node_group.max_size
      desired_size = var.on_demand_node_group.desired_size
    }
  }

  # The chart's fargate.enabled: logyard's server pods (label logyard.io/compute=fargate, in
  # its namespace) run on Fargate, in the private subnets; the module makes the pod
  # execution role.
  fargate_profiles = var.enable_fargate ? {
    logyard = {
      selectors = [{
        namespace = var.namespace
        labels    = { "logyard.io/compute" = "fargate" }
      }]
    }
  } : {}

  node_security_group_tags = var.enable_karpenter ? { "karpenter.sh/discovery" = var.name } : {}
}

module "ebs_csi_pod_identity" {
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "~> 2.0"

  name                      = "${var.name}-ebs-csi"
  attach_aws_ebs_csi_policy = true
}

# --- AWS Load Balancer Controller -------------------------------------------------------

module "lb_controller_pod_identity" {
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "~> 2.0"

  name                            = "${var.name}-aws-lbc"
  attach_aws_lb_controller_policy = true

  associations = {
    this = {
      cluster_name    = module.eks.cluster_name
      namespace       = "kube-system"
      service_account = "aws-load-balancer-controller"
    }
  }
}

resource "helm_release" "aws_load_balancer_controller" {
  name       = "aws-load-balancer-controller"
  namespace  = "kube-system"
  repository = "https://aws.github.io/eks-charts"
  chart      = "aws-load-balancer-controller"
  version    = var.lb_controller_chart_version

  values = [yamlencode({
    clusterName = module.eks.cluster_name
    # Given explicitly: with the IMDS hop limit of 1 the controller cannot look them up.
    region       = var.region
    vpcId        = module.vpc.vpc_id
    replicaCount = 2
    serviceAccount = {
      create = true
      name   = "aws-load-balancer-controller"
    }
  })]

  depends_on = [module.lb_controller_pod_identity, module.eks]
}
